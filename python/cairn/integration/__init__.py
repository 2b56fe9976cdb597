"""Native integrations on cairn's own SDK: ``cairn.integration.lightning.CairnLogger`` and
``cairn.integration.transformers.CairnCallback``. Each imports its framework only when used."""
