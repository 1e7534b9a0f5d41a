"""The explorer (``yamnet-beam explore OUTPUT``): a local web app to search an output by class or by example,
listen to and look at the windows, label them, train a head on the labels and re-rank — the agile-modelling loop.

Owns the loop's logic (:mod:`.session`, usable from a notebook), the pictures and sound of a window
(:mod:`.media`), and the web side (:mod:`.app`, Werkzeug; the page in ``static/``, no build step, no CDN).
The top layer: may import analysis, customize, table, model, audio and the foundations.
"""
