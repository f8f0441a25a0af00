"""One blueprint per resource; each declares its own url_prefix."""
