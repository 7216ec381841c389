"""The CDK app that deploys Stepwise: one construct per runtime folder, composed by infra/stack.py."""
