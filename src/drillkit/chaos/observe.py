"""Chaos Toolkit probes (observations of the system right now), for steady-state hypotheses and
the journal. Not to be confused with drillkit's pytest probes (drillkit.judge), which judge the
evidence after the drill."""

from __future__ import annotations

from drillkit.chaos import Context, action
from drillkit.targets.capabilities import GlobalTable, PointInTimeRecovery, Regions, ReplicationObservation


@action(Regions)
def region_healthy(ctx: Context, region: str) -> bool:
    return ctx.target.region_health(region).healthy


@action(Regions)
def endpoint_writable(ctx: Context) -> bool:
    """The global endpoint routes to a healthy region whose database is a primary (accepts writes)."""
    health = ctx.target.region_health(ctx.target.serving_region())
    return bool(health.healthy and health.role == "primary")


def homes_served(target) -> list[str]:
    """The home regions whose clients the endpoint does not serve right now: an item read through
    it, as that region's clients make it, gets no answer (found or not)."""
    import urllib.error
    import urllib.request

    from drillkit.load import HOME_HEADER

    unserved = []
    for home in target.home_regions():
        request = urllib.request.Request(f"{target.endpoint}/items/drillkit-probe", headers={HOME_HEADER: home})
        try:
            with urllib.request.urlopen(request, timeout=2.0):
                pass
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                unserved.append(home)
        except OSError:
            unserved.append(home)
    return unserved


@action(GlobalTable)
def every_home_served(ctx: Context) -> bool:
    """active-active: the endpoint serves the clients of every home region (in their own region,
    or in the other once theirs is lost)."""
    return not homes_served(ctx.target)


@action(Regions)
def serving_region(ctx: Context) -> str:
    return ctx.target.serving_region()


@action(ReplicationObservation)
def replication_status(ctx: Context) -> list[dict]:
    """pg_stat_replication of the primary: who streams, in which sync state, how far behind."""
    return [row.as_dict() for row in ctx.target.replication_status()]


@action(ReplicationObservation)
def standby_streaming(ctx: Context) -> bool:
    return any(row.state == "streaming" for row in ctx.target.replication_status())


@action(ReplicationObservation)
def replication_lag(ctx: Context) -> float:
    """The largest replay lag in seconds over the standbys (0 when none)."""
    samples = ctx.target.replication_lag()
    return max((s.replay_lag_s for s in samples if s.replay_lag_s is not None), default=0.0)


@action(ReplicationObservation)
def replication_lag_bytes(ctx: Context) -> int:
    """The largest WAL distance in bytes between the primary and a standby's replay (0 when none)."""
    return max((s.lag_bytes or 0 for s in ctx.target.replication_lag()), default=0)


@action(PointInTimeRecovery, Regions)
def scan_checksums(ctx: Context, region: str | None = None) -> int:
    """Records of the serving region (or `region`) whose payload no longer matches its stored checksum."""
    return ctx.target.scan_checksums(region)
