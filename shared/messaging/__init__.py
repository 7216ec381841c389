"""Messages out: templates, consent and suppression, send windows, frequency caps, one class per channel."""
