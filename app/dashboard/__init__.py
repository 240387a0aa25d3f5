"""The analysts' web dashboard: plain HTML pages, hand-written JS and CSS, SVG plots."""
