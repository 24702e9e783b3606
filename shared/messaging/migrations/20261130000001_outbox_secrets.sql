-- Fields of an event too sensitive to keep (Event::SECRET_FIELDS, e.g. a
-- card token): the relay removes them from the stored envelope's `data` in
-- the statement that marks the row published. NULL: nothing to remove.
ALTER TABLE outbox ADD COLUMN secret_fields TEXT[];
