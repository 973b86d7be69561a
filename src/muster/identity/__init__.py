"""Identity at the doors: tokens with scopes, principals, ownership (see docs/api.md, "Securing Muster")."""
