-- A user's passkey policy: 1 requires a passkey (push challenges refused), 0 allows push even
-- for a privileged user (an operator's choice), NULL follows the user's privilege.
ALTER TABLE users ADD COLUMN passkey_required INTEGER;
