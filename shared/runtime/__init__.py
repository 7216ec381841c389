"""What happens to a contact beyond one event: abandonment tracking, fixed-date broadcasts, schedules."""
