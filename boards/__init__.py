"""Board support: board catalog, UART host link, bitstream builds and programming."""

from .catalog import KNOWN_BOARDS, BoardInfo, get_board

__all__ = ["KNOWN_BOARDS", "BoardInfo", "get_board"]
