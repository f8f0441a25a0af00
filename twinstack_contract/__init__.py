"""The API contract both services implement: payload models, the error shape, the workloads.

FastAPI and Flask import these same definitions, so the same request to ``/async/X`` and
``/sync/X`` is valid or invalid in the same way and answers with the same JSON shape.
"""
