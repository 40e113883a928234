"""Board support: board catalog, UART host link, bitstream builds and programming.

The gateware modules (``bridge``, ``uart``, ``top``, ``clocking``) import Amaranth; the catalog,
the protocol and the programmer do not need it until a build starts.
"""

from .build import BuildError, BuildResult, build_bitstream
from .catalog import KNOWN_BOARDS, BoardInfo, get_board
from .program import ProgramError, program

__all__ = ["KNOWN_BOARDS", "BoardInfo", "get_board", "build_bitstream", "BuildResult",
           "BuildError", "program", "ProgramError"]
