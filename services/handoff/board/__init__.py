"""The board: one live web page where sales and marketing see the same handoffs and numbers."""

from services.handoff.board.endpoints import BoardState, router

__all__ = ["BoardState", "router"]
