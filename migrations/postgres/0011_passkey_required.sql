-- A user's passkey policy: TRUE requires a passkey (push challenges refused), FALSE allows
-- push even for a privileged user (an operator's choice), NULL follows the user's privilege.
ALTER TABLE users ADD COLUMN passkey_required BOOLEAN;
