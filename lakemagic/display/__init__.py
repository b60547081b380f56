"""How a result is shown: the paged table widget and its static HTML and text forms."""
