-- The hosted sign-in page of a passkey challenge (`/passkeys/sign-in?token=…`): the token in
-- its URL is kept only as its SHA-256, with the request options the page hands the browser and
-- the name of the app that created the challenge (the actor of what the page does).
ALTER TABLE passkey_sign_ins ADD COLUMN page_token_hash BYTEA;
ALTER TABLE passkey_sign_ins ADD COLUMN options TEXT;
ALTER TABLE passkey_sign_ins ADD COLUMN app_name TEXT;
CREATE UNIQUE INDEX passkey_sign_ins_page_token_key ON passkey_sign_ins (page_token_hash);
