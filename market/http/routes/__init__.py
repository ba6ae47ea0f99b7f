"""The market API's routes, one router per group of resources (DESIGN §7).

Each module builds its :class:`fastapi.APIRouter` for a :class:`market.service.MarketService`;
:func:`market.http.app.create_app` includes them in this order: :mod:`.info` (``/health``,
``/market``), :mod:`.orders`, :mod:`.participants`, :mod:`.intervals`.
"""
