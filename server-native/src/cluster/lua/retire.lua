-- retire(node, reason): the node stops; its users leave now. The number written out.
clock()
return retire(ARGV[3], ARGV[4])
