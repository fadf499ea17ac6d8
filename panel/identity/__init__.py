"""Who someone is: API tokens, sessions, second factors, single sign-on."""
