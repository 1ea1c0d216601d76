-- The language of a member's notices (the notification service reads it
-- with GetMember): Korean unless the member chose English.
ALTER TABLE members ADD COLUMN language text NOT NULL DEFAULT 'ko' CHECK (language IN ('ko', 'en'));
