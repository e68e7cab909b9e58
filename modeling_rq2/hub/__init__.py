"""Model cards for trained runs, and publishing them to the Hugging Face Hub."""
