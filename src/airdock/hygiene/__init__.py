"""Disk hygiene: remove only what airdock made, keep image storage under a budget.

- ``model``: the plain values every part shares (inventory, policies, plans).
- ``policy``: pure planning — inventory + usage + policy + clock → plan with a reason per item.
- ``usage``: the per-host SQLite record of image use and in-use leases (host-wide, lock-guarded).
- ``sweep``: reads the inventory from the engine and applies a plan (the only part with effects).
"""
