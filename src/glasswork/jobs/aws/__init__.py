"""What every part that talks to AWS shares: reading AWS error codes (:mod:`.errors`) and
creating DynamoDB tables (:mod:`.tables`). Nothing here imports boto3 until it is used."""
