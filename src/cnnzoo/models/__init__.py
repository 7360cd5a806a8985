"""Every architecture family; importing this package registers all of them."""
