"""mwl-broker core: settings, database, domain rules, services and the REST API."""
