"""The report of a run: what it shows (data), the HTML page (html) and its charts as PNG files (png)."""

MAP_POINTS = 5000  # most posts drawn on the map; here, not in `data`, so the CLI reads it without scikit-learn

__all__ = ["MAP_POINTS", "data", "html", "png"]
