"""``reelbench serve``: the local web app for blind pairwise judging (see docs/judging.md)."""
