"""pytest entry point of this checkout: the halab plugin brings the fixtures."""

pytest_plugins = ["lab.pytest_plugin"]
