-- The hosted sign-in page of a passkey challenge; see the PostgreSQL migration of the same name.
ALTER TABLE passkey_sign_ins ADD COLUMN page_token_hash BLOB;
ALTER TABLE passkey_sign_ins ADD COLUMN options TEXT;
ALTER TABLE passkey_sign_ins ADD COLUMN app_name TEXT;
CREATE UNIQUE INDEX passkey_sign_ins_page_token_key ON passkey_sign_ins (page_token_hash);
