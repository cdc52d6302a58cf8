"""Mail: an IMAP client (``imap``), per-mailbox monitors (``monitor``), the parser
(``parse``), rule filters (``filters``) and where passwords come from (``credentials``).

The agent that uses them is ``octopussy.agents.mail``.
"""
