"""Install media for new VMs: cloud-init seeds, kickstart injection, install trees, OS variants.

Pure Python building blocks with no libvirt and no database: services call
them to check what a user typed and to build the files a new VM boots with.
"""
