"""Chaos runs: scenarios as data (scenarios/*.yaml), a runner that plays a seeded random
sequence of them against a lab, and what it leaves behind (journal, JUnit XML, HTML report).
"""
