"""The code reviewer's backends: reading a change with `git` (`git`) and the reviews table
the agent's comments go to (`store`)."""
