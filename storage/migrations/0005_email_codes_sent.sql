-- An email code is stored before its mail goes out (so a concurrent request
-- sees it and the resend interval holds) but becomes usable only once the mail
-- was delivered: sent_at marks that moment.  A code whose mail failed is
-- deleted, so it neither blocks a retry nor replaces the previous code.
ALTER TABLE email_codes ADD COLUMN sent_at timestamptz;
