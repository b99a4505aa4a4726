"""Nodes with an offline form (the whole track in a prepass) and a live, causal form, chosen by `mode`."""

from __future__ import annotations


class OfflineOrLive:
    """Mixin for a Node with a `mode` param of auto | offline | live: auto is offline in a render, live live."""

    def offline(self) -> bool:
        return self.p.mode == "offline" or (self.p.mode == "auto" and not self.ctx.live)

    def whole_track(self) -> bool:
        return self.offline()

    def live_problem(self):
        if self.p.mode == "offline":
            return "mode offline needs the whole track; live, use mode: live (or auto)"
        return None
