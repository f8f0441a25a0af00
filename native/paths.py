"""Where native mode finds the project, and where, as root, it publishes what nginx's workers read."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# As root, each stack's web root copy and nginx temp files live below this
# (StackSettings.public_dir, nginx_config.publish).
PUBLIC_ROOT = Path("/run/twinstack")
