from odoo import fields, models


class M365DaemonHeartbeat(models.Model):
    """When each daemon worker (lease holder) last called: one row per holder, so replicas
    never write the same row (no lock waits, no serialisation retries between them)."""

    _name = "m365.daemon.heartbeat"
    _description = "Microsoft 365 Daemon Heartbeat"
    _order = "seen_at desc"
    _rec_name = "holder"

    holder = fields.Char(required=True, readonly=True)
    seen_at = fields.Datetime(required=True, readonly=True)

    _sql_constraints = [
        ("holder_unique", "UNIQUE (holder)", "One heartbeat row per daemon worker."),
    ]

    def _beat(self, holder):
        """Upsert in one statement: a worker's own row only."""
        self.env.cr.execute(
            "INSERT INTO m365_daemon_heartbeat (holder, seen_at, create_uid, create_date, "
            "write_uid, write_date) VALUES (%(holder)s, now() at time zone 'UTC', %(uid)s, "
            "now() at time zone 'UTC', %(uid)s, now() at time zone 'UTC') "
            "ON CONFLICT (holder) DO UPDATE SET seen_at = EXCLUDED.seen_at, "
            "write_uid = EXCLUDED.write_uid, write_date = EXCLUDED.write_date",
            {"holder": holder, "uid": self.env.uid},
        )
        self.invalidate_model(["seen_at"])

    def _last_seen(self):
        self.flush_model(["seen_at"])
        self.env.cr.execute("SELECT max(seen_at) FROM m365_daemon_heartbeat")
        return self.env.cr.fetchone()[0]
