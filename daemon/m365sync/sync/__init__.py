"""Pure decisions: plain data in, plain data out. Imports neither `graph` nor `crm`."""
