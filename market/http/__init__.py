"""The market's HTTP API (DESIGN §7), a thin layer over :class:`market.service.MarketService`.

- :mod:`.app`: :func:`~market.http.app.create_app`, the wiring, and ``MarketApp``, which
  answers order intake before FastAPI's routing;
- :mod:`.routes`: the routes, one router per group of resources;
- :mod:`.models`: request and response models (the OpenAPI document); :mod:`.params`: path
  parameters; :mod:`.views`: the JSON of stored records;
- :mod:`.intake`: ``POST /orders`` and ``POST /orders:batch`` checked by hand;
  :mod:`.group_commit`: their orders stored many to a transaction;
- :mod:`.problems`: the one error → problem+json mapping and its exception handlers, which the
  settlement API (:mod:`settlement.api`) installs too; :mod:`.errors`: the market's codes;
- :mod:`.body_limit`: the request size limit; :mod:`.asgi`: ASGI's types.
"""
