"""Carrying out decisions: cycles per account, connecting, the schedule. The only layer that
talks to both Graph and the CRM."""
