-- Neutralization of Microsoft 365 for Odoo CRM (odoo-bin neutralize, a duplicate with
-- "Neutralize", Odoo.sh staging and development branches): a copy of the database never
-- reads, sends or changes anything in the real mailboxes and calendars. Odoo runs this file
-- inside its neutralize transaction, on the tables as they are (no ORM).

-- Every account paused and its grant dropped: the daemon leases no paused account and sends
-- no paused account's mail; without its sealed token no daemon can act for it either.
-- Reconnecting the account here (the daemon stores a new grant) makes it sync again.
UPDATE m365_account
   SET status = 'paused',
       status_detail = 'Paused: this database is a neutralized copy and its Microsoft 365 '
           || 'sign-in was removed. Reconnect only if this copy should sync the real mailbox '
           || 'and calendar.',
       status_until = NULL,
       sealed_token_cache = NULL,
       sync_requested = false,
       sync_requested_at = NULL,
       lease_holder = NULL,
       lease_expires_at = NULL;

-- Change-notification subscriptions are the original database's: a daemon of the copy would
-- renew or delete them in Graph (the copy's URL differs) and cut off the original's push.
-- Without them a reconnected copy makes its own. The clientState hashes go with them.
DELETE FROM m365_subscription;

-- Sign-ins waiting for the daemon: their sealed authorization codes belong to the original.
UPDATE m365_connect_request
   SET sealed = NULL,
       state = 'failed',
       error = 'Not redeemed: this database is a neutralized copy. Connect again here if '
           || 'this copy should sync the mailbox.'
 WHERE state = 'pending';
UPDATE m365_connect_request
   SET sealed = NULL
 WHERE sealed IS NOT NULL;
DELETE FROM m365_oauth_callback;

-- Queued mail is the original database's to send: failed here with words, never deleted (the
-- person's text stays, and Retry sends it from this copy once its account is reconnected).
UPDATE m365_outbox
   SET state = 'failed',
       error = 'Not sent from this copy: this database is a neutralized copy, which sends no '
           || 'mail. The original database sends its own queue; Retry here only if this '
           || 'copy''s account was connected again on purpose.'
 WHERE state = 'queued';
UPDATE m365_outbox
   SET state = 'failed',
       error = 'Not confirmed in this copy: the mail was being sent when the original '
           || 'database was copied, so it may have gone out from there (look in Sent Items '
           || 'of the real mailbox). This neutralized copy sends no mail; Retry here only if '
           || 'it was not sent and this copy''s account was connected again on purpose.'
 WHERE state = 'sending';

-- Schedule Meeting's free/busy questions still waiting for Outlook.
UPDATE m365_free_busy_request
   SET state = 'failed',
       error = 'Not asked: this database is a neutralized copy, which does not ask Outlook.'
 WHERE state = 'pending';

-- The original daemon's published public keys and heartbeats: the copy's sign-ins are sealed
-- only to a daemon that serves this copy (it publishes its keys when it starts), and the
-- settings page does not show the original's daemon as running here.
DELETE FROM ir_config_parameter
 WHERE key IN ('crm_microsoft365.daemon_info', 'crm_microsoft365.daemon_last_seen');
DELETE FROM m365_daemon_heartbeat;

-- Kept on purpose: the mail delta cursors (m365_account_folder.cursor_link) and the calendar
-- bindings (m365_event_binding). They hold no credential and only matter once an account is
-- connected again; dropping them would then import every mailbox again and create every bound
-- meeting a second time in the real calendar (sending its invitations again).
