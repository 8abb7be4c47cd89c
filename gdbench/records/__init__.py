"""Records: a saved run (pytest-benchmark JSON) read, written and merged, and the text
formats tables are rendered in."""
