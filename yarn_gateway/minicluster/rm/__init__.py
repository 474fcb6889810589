"""The minicluster's ResourceManager: Hadoop 3.3 RM REST v1 on tornado.

Modules: ``errors`` (RemoteException errors), ``apps`` (application/attempt records and their
JSON), ``scheduler`` (capacity queues, AM limits, AM diagnostics), ``core`` (the RMApp state
machine shared by both RM endpoints), ``security`` (simple/SPNEGO auth, hadoop.auth cookie,
proxyusers), ``webapp`` (Hadoop's REST handlers), ``private`` (the minicluster-only AM/failover API),
``server`` (routes; one RM endpoint, active or standby).
"""
