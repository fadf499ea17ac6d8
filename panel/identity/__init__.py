"""Identity and access: who a user is (local, directory, single sign-on), their API tokens, sessions and second factors."""
