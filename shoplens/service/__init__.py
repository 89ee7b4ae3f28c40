"""The HTTP service: a FastAPI app built per settings by ``app.create_app``.

- ``deps``: every FastAPI dependency (state, live index, jobs, AR, public base
  URL, the admin check); the only reader of ``app.state``.
- ``state``: what the running service holds (model, live index, reload loop).
- Routes, one module per resource: ``search`` (photo and text), ``products``
  (read, more like this, admin upsert/delete), ``images`` (phone-sized
  renditions, cached by ``renditions``), ``admin`` (re-index jobs), ``ops``
  (health, readiness, metrics), ``home`` (the demo page); the AR routes come
  from ``shoplens.ar_assets.routes.build_router``, wired in ``deps``.
- Cross-cutting: ``params`` (shared query parameters), ``uploads`` and
  ``limits`` (byte caps), ``ratelimit``, ``middleware`` (request ids, access
  logs), ``handlers`` (every error as ``{"error": {"code", "message"}}``),
  ``schemas`` and ``openapi`` (the contract as /openapi.json shows it),
  ``docs`` (Swagger UI at /docs from vendored files), ``methods`` (405s whose
  ``Allow`` lists the documented methods), ``metrics``, ``auth``;
  ``commands``: ``shoplens serve`` and ``shoplens demo``.

May import every other part; nothing imports the service but ``shoplens.cli``.
"""
