# SPDX-License-Identifier: GPL-3.0-or-later
"""cairn: a duplicity-compatible backup engine (no Ansible imports; see docs/design)."""
__version__ = "0.1.0"
