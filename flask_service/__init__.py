"""The WSGI half of twinstack: Flask on gunicorn sync workers (one request per worker at a time)."""
