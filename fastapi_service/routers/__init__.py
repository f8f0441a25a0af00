"""One router per resource; each declares its own prefix and tags."""
