"""The board: one live web page where sales and marketing see the same handoffs and numbers."""

from services.handoff.board import goals_page  # noqa: F401 (adds the Goals and report pages)
from services.handoff.board.endpoints import BoardState, router

__all__ = ["BoardState", "router"]
