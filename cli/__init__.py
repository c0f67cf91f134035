"""The command lines, on top of every other layer: each a thin `main(argv=None)` over the packages.

train.py, export.py, live.py and predict.py in the checkout, and the kws-* console scripts of an
installed copy, all call these.
"""
