"""What two or more TechnoShare services share."""
