"""`halab ui`: the classroom web page, served on 127.0.0.1 only.

    view.py     what the page shows, as plain data (pure: unit-tested without a lab)
    picture.py  the topology as an SVG drawn by Graphviz (a stand-in for lab.graph's)
    live.py     asks the lab, continuously: the VIP, `lab.status.gather`, the client's probes
    actions.py  the only part that changes the lab: faults and their undo, exercises
    server.py   the HTTP server: the page, server-sent events, the buttons' endpoints
    templates/  the page (Jinja2), its script and style inline
"""
