-- Operator-issued passkey links (`countersign enrollments passkey-link`): a registration
-- ceremony and its link may be begun by the operator rather than an app. A NULL app is the
-- operator; the audit trail names who it was.
ALTER TABLE webauthn_registrations ALTER COLUMN app_id DROP NOT NULL;
ALTER TABLE passkey_enrollment_links ALTER COLUMN app_id DROP NOT NULL;
ALTER TABLE passkey_enrollment_links ALTER COLUMN app_name DROP NOT NULL;
